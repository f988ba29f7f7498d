process EVOSCAN_SEARCH {
    tag "${meta.id} ${chunk}/${chunks}"
    label 'process_medium'
    // the CPU or the GPU image, as conf/modules.config chooses for the backend or the search device
    container "${task.ext.container}"

    input:
    tuple val(meta), path(windows), path(embeddings), val(chunk), val(chunks)

    output:
    tuple val(meta), path("${meta.id}.neighbours.${chunk}.h5"), emit: neighbours
    tuple val("${task.process}"), val("evoscan"), eval("evoscan --version | cut -d\" \" -f2"), emit: versions

    script:
    def args = task.ext.args ?: ''
    // every chunk searches its query blocks against all windows and decoys: merged, equal to one search
    // a retry (after a kill for time or memory) continues from the blocks its attempt before kept
    def kept = task.attempt > 1 && task.previousTrace ? "${task.previousTrace.workdir}/${meta.id}.neighbours.${chunk}.h5.partial" : ''
    """
    ${kept ? "if [ -d '${kept}' ]; then mv '${kept}' .; fi" : ''}
    evoscan search --windows ${windows} --embeddings ${embeddings} --chunk ${chunk}/${chunks} ${args} -o ${meta.id}.neighbours.${chunk}.h5
    """

    stub:
    """
    touch ${meta.id}.neighbours.${chunk}.h5
    """
}
