process EVOSCAN_SEARCH {
    tag "${meta.id} ${chunk}/${chunks}"
    label 'process_medium'

    input:
    tuple val(meta), path(windows), path(embeddings), val(chunk), val(chunks)

    output:
    tuple val(meta), path("${meta.id}.neighbours.${chunk}.h5"), emit: neighbours
    tuple val("${task.process}"), val("evoscan"), eval("evoscan --version | cut -d\" \" -f2"), topic: versions

    script:
    def args = task.ext.args ?: ''
    // every chunk searches its query blocks against all windows and decoys: merged, equal to one search
    """
    evoscan search --windows ${windows} --embeddings ${embeddings} --chunk ${chunk}/${chunks} ${args} -o ${meta.id}.neighbours.${chunk}.h5
    """

    stub:
    """
    touch ${meta.id}.neighbours.${chunk}.h5
    """
}
