process EVOSCAN_BLAST {
    tag "${meta.id} ${chunk}/${chunks}"
    label 'process_medium'

    input:
    tuple val(meta), path(windows), val(chunk), val(chunks)

    output:
    tuple val(meta), path("${meta.id}.blast.${chunk}.h5"), emit: blast
    tuple val("${task.process}"), val("evoscan"), eval("evoscan --version | cut -d\" \" -f2"), topic: versions

    script:
    def args = task.ext.args ?: ''
    // every chunk searches its queries against the database of all windows: e-values stay comparable
    """
    evoscan blast --windows ${windows} --chunk ${chunk}/${chunks} --threads ${task.cpus} ${args} -o ${meta.id}.blast.${chunk}.h5
    """

    stub:
    """
    touch ${meta.id}.blast.${chunk}.h5
    """
}
